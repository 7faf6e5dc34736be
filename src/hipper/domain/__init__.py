"""Pure domain rules: no I/O, no framework. The easiest part of Hipper to read."""
