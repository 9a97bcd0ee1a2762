package main

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestNodeAPIConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		c       nodeAPIConfig
		wantErr string
		port    int
	}{
		{name: "default", c: nodeAPIConfig{Address: ":10250"}, port: 10250},
		{name: "host and files", c: nodeAPIConfig{Address: "192.0.2.1:11250", TLSCertFile: "/etc/na/tls.crt", TLSKeyFile: "/etc/na/tls.key", ClientCAFile: "/etc/na/ca.crt"}, port: 11250},
		{name: "no port", c: nodeAPIConfig{Address: "10250"}, wantErr: "node-api-address"},
		{name: "port 0 cannot be reported", c: nodeAPIConfig{Address: ":0"}, wantErr: "1-65535"},
		{name: "named port", c: nodeAPIConfig{Address: ":https"}, wantErr: "1-65535"},
		{name: "certificate without key", c: nodeAPIConfig{Address: ":10250", TLSCertFile: "/etc/na/tls.crt"}, wantErr: "go together"},
		{name: "relative CA", c: nodeAPIConfig{Address: ":10250", ClientCAFile: "ca.crt"}, wantErr: "client-ca-file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.validate()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p := tc.c.port(); p != tc.port {
				t.Errorf("port %d, want %d", p, tc.port)
			}
		})
	}
}

func TestNodeAPIFlagsParse(t *testing.T) {
	var c nodeAPIConfig
	fs := pflag.NewFlagSet("nodeagent", pflag.ContinueOnError)
	registerNodeAPIFlags(fs, &c)
	if err := fs.Parse([]string{"--node-api-address=127.0.0.1:12250", "--client-ca-file=/ca.crt"}); err != nil {
		t.Fatal(err)
	}
	if c.Address != "127.0.0.1:12250" || c.ClientCAFile != "/ca.crt" || c.TLSCertFile != "" {
		t.Errorf("%+v", c)
	}
}
