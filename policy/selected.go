package policy

// SelectedBy lists the namespace-tier policies that select a local
// endpoint in direction d (what makes the direction default-deny for it),
// in the engine's order; nil for an unknown endpoint. Flow events name them
// for a default-deny drop, which has no rule of its own.
func (r *Repository) SelectedBy(namespace, name string, d Direction) []PolicyKey {
	r.mu.Lock()
	defer r.mu.Unlock()
	ei := r.endpoints[namespace+"/"+name]
	if ei == nil || d > Egress {
		return nil
	}
	st := r.subjects[ei.id]
	if st == nil || st.dirs[d] == nil {
		return nil
	}
	return append([]PolicyKey(nil), st.dirs[d].selectedBy...)
}
