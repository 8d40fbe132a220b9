"""Input handling: finding images, importing released data, naming fields and keys."""
