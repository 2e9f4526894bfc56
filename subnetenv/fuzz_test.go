package subnetenv

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse checks that parsing subnet.env content (what Read does after
// reading the file) never panics, that errors are *Error, and that whatever
// parses is valid and survives a write and a re-read unchanged.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/flannel/*.env")
	if len(files) == 0 {
		f.Fatal("no seed files in testdata/flannel")
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := Parse(data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not an *Error", err)
			}
			return
		}
		if err := got.Validate(); err != nil {
			t.Fatalf("Parse accepted content that does not validate: %v", err)
		}
		out, err := got.MarshalText()
		if err != nil {
			t.Fatalf("cannot write what was read: %v", err)
		}
		back, err := Parse(out)
		if err != nil || back != got {
			t.Fatalf("round trip: %+v -> %q -> %+v, %v", got, out, back, err)
		}
	})
}
