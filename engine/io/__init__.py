"""Images in (limits, EXIF, formats) and avatar bundles out (manifest written last, atomically)."""
