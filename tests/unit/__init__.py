"""Fast checks of one piece: remark parsing, the codec, property tests, the code's own shape, packaging."""
