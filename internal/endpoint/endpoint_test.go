package endpoint

import (
	"strings"
	"testing"
)

func TestOption(t *testing.T) {
	tests := []struct {
		name     string
		endpoint string
		wantLen  int
		wantErr  string
	}{
		{"none", "", 0, ""},
		{"http", "http://127.0.0.1:8080/", 1, ""},
		{"https", "https://compute.googleapis.com", 1, ""},
		{"relative", "compute.googleapis.com", 0, "not an absolute http(s) URL"},
		{"query", "https://x.example/?a=b", 0, "not an absolute http(s) URL"},
		{"scheme", "ftp://x.example", 0, "not an absolute http(s) URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Option(nil, tt.endpoint, "https://compute.googleapis.com")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || len(got) != tt.wantLen {
				t.Fatalf("got %d options, %v; want %d", len(got), err, tt.wantLen)
			}
		})
	}
}
