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

// lowOrder are the u-coordinates of the points of small order on
// Curve25519 and its twist, with the non-canonical encodings of 0 and 1:
// with any of them, X25519's shared secret is all zeros, and no real
// peer's key is one. (The list libsodium refuses; a test checks that
// X25519 refuses each.) Comparing with it costs nothing, where asking
// X25519 costs a scalar multiplication per key: seconds for thousands of
// peers.
var lowOrder = [...]Key{
	{},     // 0
	{0: 1}, // 1
	{0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4, 0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49, 0xb8, 0x00},
	{0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83, 0xef, 0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f, 0x11, 0x57},
	fe(0xec), // p-1
	fe(0xed), // p, which is 0
	fe(0xee), // p+1, which is 1
}

// fe returns 2^255 - 19 - 0xed + low: p's neighbours.
func fe(low byte) Key {
	var k Key
	for i := range k {
		k[i] = 0xff
	}
	k[0], k[31] = low, 0x7f
	return k
}

// checkPublic refuses a public key no real peer has: a low-order point.
// X25519 ignores the top bit, and so does the comparison.
func checkPublic(k Key) error {
	k[31] &= 0x7f
	for _, l := range lowOrder {
		if k == l {
			return errLowOrder
		}
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
