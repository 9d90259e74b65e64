"""Head proxy, canonical face frame and (later) the expression rig."""
