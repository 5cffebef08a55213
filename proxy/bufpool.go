package proxy

import (
	"bufio"
	"io"
	"sync"
)

// ReaderPool pools bufio.Readers of one size: a connection takes one only
// while it has something to read and gives it back when idle, so idle
// connections hold no read buffer.
type ReaderPool struct{ p sync.Pool }

// NewReaderPool returns a pool of size-byte readers.
func NewReaderPool(size int) *ReaderPool {
	return &ReaderPool{p: sync.Pool{New: func() any { return bufio.NewReaderSize(nil, size) }}}
}

// Get returns a reader of r.
func (rp *ReaderPool) Get(r io.Reader) *bufio.Reader {
	br := rp.p.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

// Put gives br back; what it still buffers is dropped.
func (rp *ReaderPool) Put(br *bufio.Reader) {
	br.Reset(nil)
	rp.p.Put(br)
}

// WriterPool pools bufio.Writers of one size, as ReaderPool does readers.
type WriterPool struct{ p sync.Pool }

// NewWriterPool returns a pool of size-byte writers.
func NewWriterPool(size int) *WriterPool {
	return &WriterPool{p: sync.Pool{New: func() any { return bufio.NewWriterSize(nil, size) }}}
}

// Get returns a writer to w.
func (wp *WriterPool) Get(w io.Writer) *bufio.Writer {
	bw := wp.p.Get().(*bufio.Writer)
	bw.Reset(w)
	return bw
}

// Put gives bw back; what it has not flushed is dropped.
func (wp *WriterPool) Put(bw *bufio.Writer) {
	bw.Reset(nil)
	wp.p.Put(bw)
}
