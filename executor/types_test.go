package executor

import "testing"

func TestJobURL(t *testing.T) {
	tests := []struct {
		name string
		base string
		id   string
		want string
	}{
		{name: "base", base: "https://deploy.example.com", id: "j1", want: "https://deploy.example.com/jobs/j1"},
		{name: "trailing slash", base: "https://deploy.example.com/", id: "j1", want: "https://deploy.example.com/jobs/j1"},
		{name: "trailing slashes", base: "https://deploy.example.com//", id: "j1", want: "https://deploy.example.com/jobs/j1"},
		{name: "under a path", base: "https://example.com/deployhook/", id: "mb1x2k9q-0a1b2c3d", want: "https://example.com/deployhook/jobs/mb1x2k9q-0a1b2c3d"},
		{name: "no public URL", base: "", id: "j1", want: ""},
		{name: "only a slash", base: "/", id: "j1", want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := JobURL(tc.base, tc.id); got != tc.want {
				t.Errorf("JobURL(%q, %q) = %q, want %q", tc.base, tc.id, got, tc.want)
			}
		})
	}
	if got, want := JobPath("j1"), "/jobs/j1"; got != want {
		t.Errorf("JobPath(j1) = %q, want %q", got, want)
	}
}
