#!/usr/bin/env python3
"""Serves the repository on http://localhost:PORT (default 8000) for the demo, cross-origin
isolated: every response carries `Cross-Origin-Opener-Policy: same-origin` and
`Cross-Origin-Embedder-Policy: require-corp`, which a page needs for SharedArrayBuffer and so for
the CPU backend's worker threads (checkpoints from the Hugging Face hub still load: they come with
CORS headers). Usage: python3 scripts/serve.py [PORT]"""
import functools
import http.server
import os
import sys


class Isolated(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".wasm": "application/wasm", ".js": "text/javascript", ".mjs": "text/javascript"}

    def end_headers(self):
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        super().end_headers()


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    handler = functools.partial(Isolated, directory=root)
    with http.server.ThreadingHTTPServer(("", port), handler) as httpd:
        print(f"serving {os.path.normpath(root)} cross-origin isolated: http://localhost:{port}/demo/")
        httpd.serve_forever()


if __name__ == "__main__":
    main()
