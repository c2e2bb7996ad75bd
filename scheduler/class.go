package scheduler

import "fmt"

// Class is a priority class. Lower values are more important and are always
// released first.
type Class uint8

const (
	Critical Class = iota
	High
	Normal
	Low
	NumClasses = 4
)

var classNames = [NumClasses]string{"critical", "high", "normal", "low"}

func (c Class) String() string {
	if int(c) < NumClasses {
		return classNames[c]
	}
	return "invalid"
}

// ParseClass maps a class name (as in a header or config) to a Class.
func ParseClass(s string) (Class, bool) {
	for i, n := range classNames {
		if n == s {
			return Class(i), true
		}
	}
	return Normal, false
}

// ParseClassBytes is ParseClass for header values; it does not allocate.
func ParseClassBytes(b []byte) (Class, bool) {
	for i, n := range classNames {
		if n == string(b) {
			return Class(i), true
		}
	}
	return Normal, false
}

// MarshalText makes a Class appear by name in YAML, JSON and logs.
func (c Class) MarshalText() ([]byte, error) {
	if int(c) >= NumClasses {
		return nil, fmt.Errorf("invalid class %d", uint8(c))
	}
	return []byte(classNames[c]), nil
}

// UnmarshalText parses a class name; it lets YAML maps be keyed by class
// (class_timeout: {critical: 2s}).
func (c *Class) UnmarshalText(b []byte) error {
	v, ok := ParseClassBytes(b)
	if !ok {
		return fmt.Errorf("unknown class %q (want critical, high, normal or low)", b)
	}
	*c = v
	return nil
}
