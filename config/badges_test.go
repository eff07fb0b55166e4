package config

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestBadges_UnmarshalYAML(t *testing.T) {
	tests := []struct {
		name        string
		yaml        string
		want        Badges
		wantOn      bool
		wantPrivate bool
		wantErr     string
	}{
		{name: "unset is public", yaml: "other: 1", want: "", wantOn: true},
		{name: "true", yaml: "badges: true", want: BadgesPublic, wantOn: true},
		{name: "True", yaml: "badges: True", want: BadgesPublic, wantOn: true},
		{name: "false", yaml: "badges: false", want: BadgesOff},
		{name: "private", yaml: "badges: private", want: BadgesPrivate, wantOn: true, wantPrivate: true},
		{name: "typo", yaml: "badges: privat", wantErr: `line 1: "privat" is not true (public), private (signed-in readers only) or false (off)`},
		{name: "list", yaml: "badges: [private]", wantErr: "a list is not true"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got struct {
				Badges Badges `yaml:"badges"`
			}
			err := yaml.Unmarshal([]byte(tt.yaml), &got)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Badges != tt.want || got.Badges.On() != tt.wantOn || got.Badges.Private() != tt.wantPrivate {
				t.Errorf("badges %q (on %v, private %v), want %q (on %v, private %v)",
					got.Badges, got.Badges.On(), got.Badges.Private(), tt.want, tt.wantOn, tt.wantPrivate)
			}
		})
	}
}

// TestLoad_badges: the key is checked with the file's other keys, and the
// error says what to write.
func TestLoad_badges(t *testing.T) {
	_, err := Parse([]byte("badges: sometimes\n"))
	if err == nil || !strings.Contains(err.Error(), `line 1: badges: "sometimes" is not true (public), private (signed-in readers only) or false (off)`) {
		t.Fatalf("Parse error %v, want the badges message", err)
	}
}
