"""From field to assets: marching cubes, mesh clean-up, UV unwrap, texture bake, depth/normal maps, export."""
