package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/klog/v2"
)

// logConfig is where the log goes and how much of it, from klog's flags as
// flannel accepts them:
//
//   - -v N: 0 logs INFO and above; 1 or more adds DEBUG (weft has two
//     levels below WARNING, not klog's ten);
//   - -logtostderr (default true): everything to standard error, as a
//     container runtime or journald collects it;
//   - -logtostderr=false: to -log_file, or to flanneld.log in -log_dir
//     (the file is appended to, never rotated), plus standard error for
//     records at -stderrthreshold (default ERROR) and above, or all of
//     them with -alsologtostderr;
//   - -vmodule, -log_backtrace_at, -log_file_max_size and klog's header
//     flags are accepted, so flannel's command lines keep working, and
//     do nothing; flanneld warns at start when one is set.
type logConfig struct {
	level     slog.Level
	toStderr  bool
	alsoAll   bool
	threshold slog.Level
	file      string
}

func newLogConfig(v int, toStderr, also bool, dir, file, threshold string) (logConfig, error) {
	c := logConfig{level: slog.LevelInfo, toStderr: toStderr, alsoAll: also, threshold: slog.LevelError}
	if v > 0 {
		c.level = slog.LevelDebug
	}
	switch strings.ToUpper(threshold) {
	case "", "ERROR", "2":
	case "INFO", "0":
		c.threshold = slog.LevelInfo
	case "WARNING", "WARN", "1":
		c.threshold = slog.LevelWarn
	case "FATAL", "3":
		c.threshold = slog.LevelError + 4
	default:
		return logConfig{}, fmt.Errorf("-stderrthreshold %q: want INFO, WARNING, ERROR or FATAL", threshold)
	}
	if !toStderr {
		switch {
		case file != "":
			c.file = file
		case dir != "":
			c.file = filepath.Join(dir, "flanneld.log")
		default:
			// klog would pick a file in the temp directory; a log
			// nobody finds helps nobody.
			return logConfig{}, fmt.Errorf("-logtostderr=false needs -log_file or -log_dir")
		}
	}
	return c, nil
}

// open returns the logger, and a function that closes its file.
func (c logConfig) open(stderr io.Writer) (*slog.Logger, func(), error) {
	opts := &slog.HandlerOptions{Level: c.level}
	if c.toStderr {
		return slog.New(slog.NewTextHandler(stderr, opts)), func() {}, nil
	}
	if err := os.MkdirAll(filepath.Dir(c.file), 0o755); err != nil {
		return nil, nil, fmt.Errorf("-log_dir/-log_file: %w", err)
	}
	f, err := os.OpenFile(c.file, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("-log_dir/-log_file: %w", err)
	}
	h := slog.Handler(slog.NewTextHandler(f, opts))
	min := c.threshold
	if c.alsoAll {
		min = c.level
	}
	h = teeHandler{h, slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: max(min, c.level)})}
	return slog.New(h), func() { f.Close() }, nil
}

// teeHandler sends each record to two handlers, each filtering by its own
// level.
type teeHandler struct{ a, b slog.Handler }

func (t teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return t.a.Enabled(ctx, l) || t.b.Enabled(ctx, l)
}

func (t teeHandler) Handle(ctx context.Context, r slog.Record) error {
	var err error
	for _, h := range []slog.Handler{t.a, t.b} {
		if h.Enabled(ctx, r.Level) {
			if e := h.Handle(ctx, r.Clone()); e != nil && err == nil {
				err = e
			}
		}
	}
	return err
}

func (t teeHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return teeHandler{t.a.WithAttrs(attrs), t.b.WithAttrs(attrs)}
}

func (t teeHandler) WithGroup(name string) slog.Handler {
	return teeHandler{t.a.WithGroup(name), t.b.WithGroup(name)}
}

// routeKlog sends what client-go logs through klog to log, so that every
// line of the agent's log has one format: klog's own would print its
// header format to standard error. klog's verbosity maps onto slog's
// levels below INFO (V(1) is -1), so -v 0 drops client-go's detail as it
// drops weft's DEBUG. The setting is klog's and so the process's.
func routeKlog(log *slog.Logger) {
	klog.SetSlogLogger(log.With("component", "client-go"))
}
