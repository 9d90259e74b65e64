"""The radiance field: an SDF-density grid and a triplane colour decoder in canonical face space."""
