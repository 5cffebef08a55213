package workloads

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// DoorManagerService is the gRPC service of Cilium's gRPC guide
// (cloudcity.proto, package cloudcity): a call is an HTTP/2 POST to
// /cloudcity.DoorManager/<Method>, which is what the policies in
// examples/grpc and examples/cilium name.
const DoorManagerService = "cloudcity.DoorManager"

// DoorManagerMethods are the service's methods. Cilium's messages are
// replaced by well-known wrapper types (no protoc here): the door id or
// access code as a UInt32Value, a maintenance request as a StringValue,
// answers as StringValue or BoolValue.
var DoorManagerMethods = []string{"GetName", "GetLocation", "GetStatus", "RequestMaintenance", "SetAccessCode"}

// DoorManagerPath is the HTTP/2 path of a method.
func DoorManagerPath(method string) string { return "/" + DoorManagerService + "/" + method }

// doorMethod is one method: its request type and its answer.
type doorMethod struct {
	request func() proto.Message
	reply   func() proto.Message
	serve   func(proto.Message) proto.Message
}

var doorMethods = map[string]doorMethod{
	"GetName": {
		request: func() proto.Message { return &wrapperspb.UInt32Value{} },
		reply:   func() proto.Message { return &wrapperspb.StringValue{} },
		serve: func(in proto.Message) proto.Message {
			return wrapperspb.String(fmt.Sprintf("Spaceport door #%d", in.(*wrapperspb.UInt32Value).GetValue()))
		},
	},
	"GetLocation": {
		request: func() proto.Message { return &wrapperspb.UInt32Value{} },
		reply:   func() proto.Message { return &wrapperspb.StringValue{} },
		serve: func(proto.Message) proto.Message {
			return wrapperspb.String("Cloud City, platform 327 (lat 10.3, long 20.4)")
		},
	},
	"GetStatus": {
		request: func() proto.Message { return &wrapperspb.UInt32Value{} },
		reply:   func() proto.Message { return &wrapperspb.StringValue{} },
		serve:   func(proto.Message) proto.Message { return wrapperspb.String("CLOSED") },
	},
	"RequestMaintenance": {
		request: func() proto.Message { return &wrapperspb.StringValue{} },
		reply:   func() proto.Message { return &wrapperspb.BoolValue{} },
		serve:   func(proto.Message) proto.Message { return wrapperspb.Bool(true) },
	},
	"SetAccessCode": {
		request: func() proto.Message { return &wrapperspb.UInt32Value{} },
		reply:   func() proto.Message { return &wrapperspb.BoolValue{} },
		serve:   func(proto.Message) proto.Message { return wrapperspb.Bool(true) },
	},
}

// doorManager is the service implementation; seen may be nil.
type doorManager struct {
	seen func(fullMethod, remote string)
}

// NewDoorManager returns a gRPC server with the door manager registered.
// seen, if not nil, is called with the full method and the client's
// address of every call that reaches the service.
func NewDoorManager(seen func(fullMethod, remote string), opts ...grpc.ServerOption) *grpc.Server {
	s := grpc.NewServer(opts...)
	desc := grpc.ServiceDesc{
		ServiceName: DoorManagerService,
		HandlerType: (*any)(nil),
		Metadata:    "cloudcity.proto",
	}
	for _, name := range DoorManagerMethods {
		m := doorMethods[name]
		desc.Methods = append(desc.Methods, grpc.MethodDesc{
			MethodName: name,
			Handler: func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
				in := m.request()
				if err := dec(in); err != nil {
					return nil, err
				}
				handle := func(ctx context.Context, req any) (any, error) {
					if f := srv.(*doorManager).seen; f != nil {
						remote := ""
						if p, ok := peer.FromContext(ctx); ok {
							remote = p.Addr.String()
						}
						f(DoorManagerPath(name), remote)
					}
					return m.serve(req.(proto.Message)), nil
				}
				if icpt == nil {
					return handle(ctx, in)
				}
				return icpt(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: DoorManagerPath(name)}, handle)
			},
		})
	}
	s.RegisterService(&desc, &doorManager{seen: seen})
	return s
}

// CallDoorManager calls method on the door manager with a fixed request
// (door 1, access code 4242, a maintenance note) and returns the answer as
// text. The error is the gRPC status error of the call.
func CallDoorManager(ctx context.Context, cc grpc.ClientConnInterface, method string) (string, error) {
	m, ok := doorMethods[method]
	if !ok {
		return "", fmt.Errorf("door manager: no method %q (have %s)", method, strings.Join(DoorManagerMethods, ", "))
	}
	var req proto.Message
	switch method {
	case "RequestMaintenance":
		req = wrapperspb.String("door 1 jams")
	case "SetAccessCode":
		req = wrapperspb.UInt32(4242)
	default:
		req = wrapperspb.UInt32(1)
	}
	reply := m.reply()
	if err := cc.Invoke(ctx, DoorManagerPath(method), req, reply); err != nil {
		return "", err
	}
	switch r := reply.(type) {
	case *wrapperspb.StringValue:
		return r.GetValue(), nil
	case *wrapperspb.BoolValue:
		return fmt.Sprint(r.GetValue()), nil
	}
	return "", nil
}
