package etcd

import (
	"bytes"
	"strconv"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftnet/weft/lease"
)

// MaxRecvBytes is the largest response the client New makes accepts from
// etcd: a page of a listing, a watch response, a read. What any writer of
// the network's keys puts there is read by every node at once, so a
// response as large as etcd will send (2 GiB) is a way to exhaust every
// node's memory together. etcd refuses a request over 1.5 MiB by default
// (--max-request-bytes), so that every single key and transaction fits in
// this with room to spare; a listing page over it is asked for again with
// fewer keys, and a watch response over it makes the
// watcher list again. A client given in Options.Client keeps its own
// limit.
const MaxRecvBytes = 4 << 20

// recvWindow is the client's HTTP/2 flow-control window, per stream and
// per connection: what etcd may send ahead of what the client has read.
const recvWindow = 1 << 20

// isTooBig reports whether err is the client's refusal of a response
// over its receive limit. etcd's own refusals of the same code (too many
// requests, no space) are not: they say nothing of a response's size.
func isTooBig(err error) bool {
	return status.Code(err) == codes.ResourceExhausted && strings.Contains(err.Error(), "larger than max")
}

// oversizeTag starts the stand-in for a value over lease.MaxValueSize:
// no JSON value starts with a NUL byte.
const oversizeTag = "\x00oversize:"

// trimValue returns kv, or if its value is over lease.MaxValueSize, a
// copy that holds in its place only how large it was: a page or a watch
// event is released as soon as it is decoded, and nothing keeps what a
// writer padded a value with.
func trimValue(kv *mvccpb.KeyValue) *mvccpb.KeyValue {
	if lease.CheckValueSize(len(kv.Value)) == nil {
		return kv
	}
	return oversized(kv, len(kv.Value), false)
}

// oversized returns a copy of kv whose value is the stand-in for one of
// size bytes, or more than size with atLeast (a value not read: see
// listPaged).
func oversized(kv *mvccpb.KeyValue, size int, atLeast bool) *mvccpb.KeyValue {
	v := strconv.AppendInt([]byte(oversizeTag), int64(size), 10)
	if atLeast {
		v = append(v, '+')
	}
	return &mvccpb.KeyValue{
		Key: kv.Key, CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision,
		Version: kv.Version, Lease: kv.Lease, Value: v,
	}
}

// valueSizeError returns the *lease.SizeError for a value, if it is over
// lease.MaxValueSize or is the stand-in trimValue left for one.
func valueSizeError(v []byte) error {
	if rest, ok := bytes.CutPrefix(v, []byte(oversizeTag)); ok {
		rest, atLeast := bytes.CutSuffix(rest, []byte("+"))
		if n, err := strconv.Atoi(string(rest)); err == nil && (n > lease.MaxValueSize || atLeast && n == lease.MaxValueSize) {
			return &lease.SizeError{Field: "value", Size: n, Limit: lease.MaxValueSize, AtLeast: atLeast}
		}
	}
	return lease.CheckValueSize(len(v))
}
