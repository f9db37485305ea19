package seccomp

import "testing"

func BenchmarkDefault(b *testing.B) {
	for b.Loop() {
		if _, err := Default(dockerCaps); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCompileDefault(b *testing.B) {
	s, err := Default(dockerCaps)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Compile(s); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDefaultCompile is what a container start pays: the profile for its
// capabilities, then the program.
func BenchmarkDefaultCompile(b *testing.B) {
	for b.Loop() {
		s, err := Default(dockerCaps)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Compile(s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDefaultProgramCached(b *testing.B) {
	if _, err := DefaultProgram(dockerCaps); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := DefaultProgram(dockerCaps); err != nil {
			b.Fatal(err)
		}
	}
}
