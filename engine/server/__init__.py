"""The engine over HTTP (``likeness serve``): API v1 for the Blender add-on and studio scripts.

settings (frozen ServerSettings, bind rule) | schema (wire types) | jobs (durable SQLite queue, no HTTP) |
workspace (files on disk, the one path resolver) | security (host, origin, token, body cap) | uploads (multipart in
memory, header probe) | imports (a bundle's field streamed in, checked, stored by content) | worker (the spawned
build process) | supervisor (keeps one worker per device alive) | renders (on-request renders) | errors (the one
engine-error -> HTTP mapping) | app (routes) | serve (uvicorn).
"""

API_VERSION = 1
