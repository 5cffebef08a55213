// Package echo is the gRPC service of the proxy benchmarks, bench.Echo
// with one unary method Echo(BytesValue) → BytesValue. It is described by
// hand (a grpc.ServiceDesc over wrapperspb messages) so that the
// benchmarks need no protoc.
package echo

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Method is the full method name, the path of its HTTP/2 request.
const Method = "/bench.Echo/Echo"

// Server is the handler type of the service.
type Server interface {
	Echo(context.Context, *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error)
}

// Impl answers with the request's value.
type Impl struct{}

// Echo returns in.
func (Impl) Echo(_ context.Context, in *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) {
	return in, nil
}

// ServiceDesc describes bench.Echo for grpc.Server.RegisterService.
var ServiceDesc = grpc.ServiceDesc{
	ServiceName: "bench.Echo",
	HandlerType: (*Server)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Echo",
		Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.BytesValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			return srv.(Server).Echo(ctx, in)
		},
	}},
}

// Call makes one Echo call on cc.
func Call(ctx context.Context, cc grpc.ClientConnInterface, in *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) {
	out := new(wrapperspb.BytesValue)
	if err := cc.Invoke(ctx, Method, in, out); err != nil {
		return nil, err
	}
	return out, nil
}
