package main

import "testing"

func TestWebURL(t *testing.T) {
	tests := []struct{ api, want string }{
		{"https://api.github.com/", "https://github.com"},
		{"https://API.github.com", "https://github.com"},
		{"https://ghe.example.com/api/v3/", "https://ghe.example.com"},
		{"https://ghe.example.com:8443/api/v3", "https://ghe.example.com:8443"},
		{"http://127.0.0.1:5000/", ""}, // a test's fake: the server's default
		{"", ""},
	}
	for _, tt := range tests {
		if got := webURL(tt.api); got != tt.want {
			t.Errorf("webURL(%q) = %q, want %q", tt.api, got, tt.want)
		}
	}
}
