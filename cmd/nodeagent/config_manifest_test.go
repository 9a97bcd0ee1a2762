package main

import (
	"strings"
	"testing"

	"github.com/nodeagent/nodeagent/pkg/logs"
)

func TestManifestMaxBytesFromFlagOrFile(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		args    []string
		want    int64
		wantErr string
	}{
		{name: "default is 1 MiB", want: 1 << 20},
		// YAML numbers reach the flag as floats ("2.097152e+06"): still a size.
		{name: "a number in the file", file: "manifest-max-bytes: 2097152\n", want: 2097152},
		{name: "a quantity in the file", file: "manifest-max-bytes: 512Ki\n", want: 512 << 10},
		{name: "the flag wins", file: "manifest-max-bytes: 512Ki\n", args: []string{"--manifest-max-bytes", "4Mi"}, want: 4 << 20},
		{name: "not a size", args: []string{"--manifest-max-bytes", "lots"}, wantErr: `manifest-max-bytes: "lots" is not a size`},
		{name: "zero", file: "manifest-max-bytes: 0\n", wantErr: `manifest-max-bytes: "0" must be a positive number of bytes`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.file != "" {
				args = append([]string{"--config", writeConfig(t, tc.file)}, args...)
			}
			cfg, err := loadConfig(args)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, err := logs.ParseSize(cfg.ManifestMaxBytes); err != nil || got != tc.want {
				t.Errorf("manifest-max-bytes = %q (%d, %v), want %d", cfg.ManifestMaxBytes, got, err, tc.want)
			}
		})
	}
}
