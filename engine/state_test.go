package engine

import "testing"

func TestValidName(t *testing.T) {
	for name, ok := range map[string]bool{
		"web": true, "a": true, "Web_1.2-x": true, "9lives": true,
		"": false, "_x": false, ".x": false, "-x": false, "a b": false, "a/b": false, "é": false, "a:b": false,
	} {
		if validName(name) != ok {
			t.Errorf("validName(%q) = %v, want %v", name, !ok, ok)
		}
	}
}
