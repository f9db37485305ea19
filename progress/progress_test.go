package progress

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestPlainLinesOnStatusChange(t *testing.T) {
	var b bytes.Buffer
	r := NewRenderer(&b, false)
	r.Update(Event{ID: "aaa", Status: "Waiting"})
	for i := int64(1); i <= 5; i++ {
		r.Update(Event{ID: "aaa", Status: "Downloading", Current: i * 100, Total: 500})
	}
	r.Update(Event{ID: "bbb", Status: "Already exists"})
	r.Update(Event{ID: "aaa", Status: "Pull complete"})
	r.Flush()
	want := "aaa: Waiting\naaa: Downloading\nbbb: Already exists\naaa: Pull complete\n"
	if b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}

func TestTerminalRedrawsInPlace(t *testing.T) {
	var b bytes.Buffer
	r := NewRenderer(&b, true)
	r.Update(Event{ID: "aaa", Status: "Waiting"})
	r.Update(Event{ID: "bbb", Status: "Waiting"})
	r.lastDraw = time.Time{} // let the byte update through the throttle
	r.Update(Event{ID: "aaa", Status: "Downloading", Current: 2_500_000, Total: 5_000_000})
	r.Flush()
	out := b.String()
	if !strings.Contains(out, "\x1b[2A") {
		t.Errorf("no cursor-up over the two layer lines: %q", out)
	}
	last := out[strings.LastIndex(out, "\x1b[2A"):]
	if !strings.Contains(last, "aaa: Downloading [") || !strings.Contains(last, "2.5MB/5MB") || !strings.Contains(last, "bbb: Waiting") {
		t.Errorf("final frame: %q", last)
	}
}

func TestHumanSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0B", 999: "999B", 1000: "1kB", 4_260_000: "4.26MB", 1_500_000_000: "1.5GB"} {
		if got := HumanSize(n); got != want {
			t.Errorf("HumanSize(%d) = %s, want %s", n, got, want)
		}
	}
}
