package hostgw

import (
	"bytes"
	"encoding/json"
	"strconv"

	"github.com/weftnet/weft/lease"
)

// Config is net-conf.json's Backend object for host-gw:
//
//	{"Type": "host-gw"}
//
// The backend has no settings; flannel ignores any other field, and so
// does ParseConfig.
type Config struct{}

// ParseConfig parses net-conf.json's Backend object for host-gw. nil or
// null is the default. Errors are *lease.ConfigError naming the field.
func ParseConfig(backend json.RawMessage) (Config, error) {
	b := bytes.TrimSpace(backend)
	if len(b) == 0 || bytes.Equal(b, []byte("null")) {
		return Config{}, nil
	}
	var raw struct{ Type json.RawMessage }
	if err := json.Unmarshal(b, &raw); err != nil {
		return Config{}, &lease.ConfigError{Field: "Backend", Reason: "is not a valid JSON object: " + err.Error(), Err: err}
	}
	if len(raw.Type) == 0 || bytes.Equal(raw.Type, []byte("null")) {
		return Config{}, nil
	}
	var typ string
	if err := json.Unmarshal(raw.Type, &typ); err != nil {
		return Config{}, &lease.ConfigError{Field: "Backend.Type", Reason: "must be a string, not " + lease.Quote(string(raw.Type), 64)}
	}
	if typ != BackendType {
		return Config{}, &lease.ConfigError{Field: "Backend.Type", Value: strconv.Quote(typ), Reason: `is not host-gw; this is the host-gw backend's config`}
	}
	return Config{}, nil
}
