"""The live view's widgets and screens, one module each."""
