package ctxutil

import (
	"context"
	"testing"
	"time"
)

func TestSleep(t *testing.T) {
	if err := Sleep(context.Background(), time.Millisecond); err != nil {
		t.Errorf("Sleep: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if err := Sleep(ctx, time.Hour); err != context.Canceled || time.Since(start) > time.Second {
		t.Errorf("Sleep on a done context: %v after %v", err, time.Since(start))
	}
}

func TestSend(t *testing.T) {
	ch := make(chan int, 1)
	if err := Send(context.Background(), ch, 7); err != nil || <-ch != 7 {
		t.Errorf("Send: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Send(ctx, make(chan int), 1); err != context.Canceled {
		t.Errorf("Send with no receiver on a done context: %v", err)
	}
}
