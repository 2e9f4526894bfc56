package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// A Client reads a daemon's status over its unix socket or its health
// server.
type Client struct {
	http *http.Client
	base string // scheme and host
	addr string // for errors
}

// NewClient returns a Client for the daemon listening on the unix socket
// at socket, or, if url is set instead, for the health server at url
// (http://host:port). Exactly one must be set.
func NewClient(socket, rawURL string) (*Client, error) {
	switch {
	case socket != "" && rawURL != "":
		return nil, errors.New("status: give a socket or a URL, not both")
	case rawURL != "":
		u, err := url.Parse(rawURL)
		if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("status: URL %q: want http://host:port", rawURL)
		}
		return &Client{http: &http.Client{Timeout: 30 * time.Second}, base: u.Scheme + "://" + u.Host, addr: rawURL}, nil
	case socket != "":
		t := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}}
		return &Client{http: &http.Client{Transport: t, Timeout: 30 * time.Second}, base: "http://weft", addr: socket}, nil
	}
	return nil, errors.New("status: give a socket or a URL")
}

// Status fetches one page of the Document.
func (c *Client) Status(ctx context.Context, q Query) (*Document, error) {
	var doc Document
	if err := c.do(ctx, http.MethodGet, Path, q.Values(), &doc); err != nil {
		return nil, err
	}
	if doc.Version != Version {
		return nil, fmt.Errorf("status: %s answers format version %d; this client reads %d", c.addr, doc.Version, Version)
	}
	return &doc, nil
}

// AllPeers fetches the Document with every peer q selects, following
// the pages.
func (c *Client) AllPeers(ctx context.Context, q Query) (*Document, error) {
	if q.Limit == 0 {
		q.Limit = MaxLimit
	}
	doc, err := c.Status(ctx, q)
	if err != nil {
		return nil, err
	}
	for next := doc.Next; next != ""; {
		q.After = next
		more, err := c.Status(ctx, q)
		if err != nil {
			return nil, err
		}
		doc.Peers = append(doc.Peers, more.Peers...)
		next = more.Next
	}
	doc.Next = ""
	return doc, nil
}

// Probe asks the daemon to probe one peer now.
func (c *Client) Probe(ctx context.Context, peer string) (*ProbeAnswer, error) {
	var a ProbeAnswer
	if err := c.do(ctx, http.MethodPost, ProbePath, url.Values{"peer": {peer}}, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// A DaemonError is the daemon's refusal of a request, with its message.
type DaemonError struct {
	Code    int
	Message string
}

func (e *DaemonError) Error() string { return e.Message }

func (c *Client) do(ctx context.Context, method, path string, q url.Values, v any) error {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return err
	}
	if path == ProbePath {
		req.Header.Set(ProbeHeader, "1")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is the socket's placeholder; say what failed
		}
		return fmt.Errorf("status: cannot reach the daemon at %s: %w", c.addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return fmt.Errorf("status: read the answer of %s: %w", c.addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e Error
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return &DaemonError{Code: resp.StatusCode, Message: e.Error}
		}
		return &DaemonError{Code: resp.StatusCode, Message: fmt.Sprintf("%s answers %s: %s", c.addr, resp.Status, strings.TrimSpace(string(body)))}
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("status: %s answers no status document (is it a weft daemon?): %w", c.addr, err)
	}
	return nil
}
