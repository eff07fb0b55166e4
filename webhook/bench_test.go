package webhook

import (
	"encoding/json"
	"testing"
)

// largePushSize is the size of the large benchmark push: GitHub's new-branch push
// (7,678 bytes compacted, one commit) grown by bigPush to 396 commits, 291,682
// bytes.
const largePushSize = 292_000

// benchBodies returns the two benchmark pushes, 7.7 KB and 292 KB.
func benchBodies(b *testing.B) []struct {
	name string
	body []byte
} {
	return []struct {
		name string
		body []byte
	}{
		{"push7.7KB", readPayload(b, "push/with-new-branch.payload.json")},
		{"push292KB", bigPush(b, largePushSize)},
	}
}

var benchSecret = []byte("It's a Secret to Everybody")

// BenchmarkVerify checks a good signature.
func BenchmarkVerify(b *testing.B) {
	for _, bb := range benchBodies(b) {
		sig := Sign(bb.body, benchSecret)
		b.Run(bb.name, func(b *testing.B) {
			b.SetBytes(int64(len(bb.body)))
			b.ReportAllocs()
			for b.Loop() {
				if err := Verify(bb.body, sig, benchSecret); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerify_badSignature checks a signature made with another secret: the
// whole cost of rejecting a forged delivery, since Verify runs before Parse.
func BenchmarkVerify_badSignature(b *testing.B) {
	for _, bb := range benchBodies(b) {
		sig := Sign(bb.body, []byte("not the secret"))
		b.Run(bb.name, func(b *testing.B) {
			b.SetBytes(int64(len(bb.body)))
			b.ReportAllocs()
			for b.Loop() {
				if err := Verify(bb.body, sig, benchSecret); err != ErrBadSignature {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParse parses a push with the scanner.
func BenchmarkParse(b *testing.B) {
	for _, bb := range benchBodies(b) {
		b.Run(bb.name, func(b *testing.B) {
			b.SetBytes(int64(len(bb.body)))
			b.ReportAllocs()
			for b.Loop() {
				ev, err := Parse("push", "72d3162e-cc78-11e3-81ab-4c9367dc0958", bb.body)
				if err != nil || ev.Branch != "master" {
					b.Fatal(ev, err)
				}
			}
		})
	}
}

// BenchmarkVerifyParse is Verify then Parse: this package's share of a request.
func BenchmarkVerifyParse(b *testing.B) {
	for _, bb := range benchBodies(b) {
		sig := Sign(bb.body, benchSecret)
		b.Run(bb.name, func(b *testing.B) {
			b.SetBytes(int64(len(bb.body)))
			b.ReportAllocs()
			for b.Loop() {
				if err := Verify(bb.body, sig, benchSecret); err != nil {
					b.Fatal(err)
				}
				ev, err := Parse("push", "72d3162e-cc78-11e3-81ab-4c9367dc0958", bb.body)
				if err != nil || ev.Branch != "master" {
					b.Fatal(ev, err)
				}
			}
		})
	}
}

// BenchmarkParse_encodingJSON is the baseline the scanner replaced: encoding/json
// decoding a push into a struct holding only the fields Parse needs.
func BenchmarkParse_encodingJSON(b *testing.B) {
	type push struct {
		Ref        string `json:"ref"`
		After      string `json:"after"`
		Deleted    bool   `json:"deleted"`
		Repository struct {
			FullName string `json:"full_name"`
		} `json:"repository"`
		Pusher struct {
			Name string `json:"name"`
		} `json:"pusher"`
		Sender struct {
			Login string `json:"login"`
		} `json:"sender"`
	}
	for _, bb := range benchBodies(b) {
		b.Run(bb.name, func(b *testing.B) {
			b.SetBytes(int64(len(bb.body)))
			b.ReportAllocs()
			for b.Loop() {
				var p push
				if err := json.Unmarshal(bb.body, &p); err != nil || p.Ref != "refs/heads/master" {
					b.Fatal(p, err)
				}
			}
		})
	}
}

// BenchmarkValid is json.Valid over the same bodies, for scale: the least any
// parser that checks the grammar with encoding/json must spend.
func BenchmarkValid(b *testing.B) {
	for _, bb := range benchBodies(b) {
		b.Run(bb.name, func(b *testing.B) {
			b.SetBytes(int64(len(bb.body)))
			b.ReportAllocs()
			for b.Loop() {
				if !json.Valid(bb.body) {
					b.Fatal("invalid")
				}
			}
		})
	}
}
