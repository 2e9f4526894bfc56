package main

import (
	"io"
	"strings"
	"testing"
)

func TestFlagsAndEnvironment(t *testing.T) {
	env := map[string]string{
		"FLANNELD_ETCD_ENDPOINTS":            "http://10.0.0.1:2379",
		"FLANNELD_IP_MASQ":                   "true",
		"FLANNELD_SUBNET_LEASE_RENEW_MARGIN": "30",
		"FLANNELD_PUBLIC_IP":                 "192.0.2.9",
		"NODE_NAME":                          "node-7",
	}
	c, err := parseFlags([]string{"--public-ip", "192.0.2.1", "--iface=eth1"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.etcdEndpoints != "http://10.0.0.1:2379" || !c.ipMasq || c.renewMargin != 30 || c.node != "node-7" || c.iface != "eth1" {
		t.Errorf("environment not applied: %+v", c)
	}
	if c.publicIP != "192.0.2.1" {
		t.Errorf("a command-line flag must win over the environment: %q", c.publicIP)
	}
	if c.subnetFile != "/run/flannel/subnet.env" || c.etcdPrefix != "/coreos.com/network" {
		t.Errorf("defaults: %+v", c)
	}
	if _, err := parseFlags(nil, func(k string) string {
		if k == "FLANNELD_HEALTHZ_PORT" {
			return "many"
		}
		return ""
	}, io.Discard); err == nil || !strings.Contains(err.Error(), "FLANNELD_HEALTHZ_PORT") {
		t.Errorf("a bad environment value: %v", err)
	}
	if _, err := parseFlags([]string{"--no-such-flag"}, func(string) string { return "" }, io.Discard); err == nil {
		t.Error("unknown flag accepted")
	}
}
