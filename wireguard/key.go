package wireguard

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"

	"golang.org/x/crypto/curve25519"
)

// A Key is a WireGuard key: a Curve25519 private or public key, or a
// preshared key. Its text form is standard base64 (44 characters), as `wg`
// prints it and flannel publishes it.
type Key [32]byte

// ParseKey parses a key's base64 form.
func ParseKey(s string) (Key, error) {
	var k Key
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return k, fmt.Errorf("key %s is not base64: %w", quote(s), err)
	}
	if len(b) != len(k) {
		return k, fmt.Errorf("key %s is %d bytes, want 32", quote(s), len(b))
	}
	copy(k[:], b)
	return k, nil
}

// GenerateKey returns a new private key, clamped as Curve25519 wants.
func GenerateKey() (Key, error) {
	var k Key
	if _, err := rand.Read(k[:]); err != nil {
		return Key{}, fmt.Errorf("generate key: %w", err)
	}
	k[0] &= 248
	k[31] = (k[31] & 127) | 64
	return k, nil
}

// PublicKey returns the public key of private key k.
func (k Key) PublicKey() Key {
	var pub Key
	b, err := curve25519.X25519(k[:], curve25519.Basepoint)
	if err != nil {
		// Only a low-order input fails, and a clamped scalar never is one.
		return Key{}
	}
	copy(pub[:], b)
	return pub
}

// IsZero reports whether k is the zero key: none.
func (k Key) IsZero() bool { return k == Key{} }

// String returns k's base64 form.
func (k Key) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// MarshalText implements encoding.TextMarshaler.
func (k Key) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (k *Key) UnmarshalText(b []byte) error {
	p, err := ParseKey(string(b))
	if err != nil {
		return err
	}
	*k = p
	return nil
}

var errLowOrder = errors.New("public key is a low-order point, which no WireGuard peer can have")

// checkPublic refuses a public key no real peer has: all zeros (or another
// low-order point, with which the handshake's shared secret is zero).
func checkPublic(k Key) error {
	if k.IsZero() {
		return errLowOrder
	}
	var probe Key
	probe[0] = 8 // any clamped scalar: a low-order point makes X25519 fail
	probe[31] = 64
	if _, err := curve25519.X25519(probe[:], k[:]); err != nil {
		return errLowOrder
	}
	return nil
}

// quote quotes s for a message, cut short.
func quote(s string) string {
	if len(s) > 64 {
		return fmt.Sprintf("%q... (%d bytes)", s[:64], len(s))
	}
	return fmt.Sprintf("%q", s)
}
