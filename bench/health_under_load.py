"""/health latency while 4 clients post 1.9 MB /tokenize bodies for 6 s (polled every 50 ms).

Usage: python3 bench/health_under_load.py target/release/gpt   (the default model; needs it cached)
"""
import json, socket, subprocess, sys, threading, time, urllib.request
gpt = sys.argv[1]
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
srv = subprocess.Popen([gpt, "serve", "--port", str(port), "--model-id", "m"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
base = f"http://127.0.0.1:{port}"
for _ in range(300):
    try: urllib.request.urlopen(base + "/health"); break
    except OSError: time.sleep(0.1)
body = json.dumps({"prompt": "the wheel turned and the stones ground. " * 48000}).encode()
stop = time.time() + 6
def load():
    while time.time() < stop:
        try: urllib.request.urlopen(urllib.request.Request(base + "/tokenize", body, {"Content-Type": "application/json"}), timeout=60).read()
        except Exception as e: pass
ts = [threading.Thread(target=load) for _ in range(4)]
[t.start() for t in ts]
lat = []
time.sleep(0.5)
while time.time() < stop:
    t0 = time.perf_counter(); urllib.request.urlopen(base + "/health", timeout=30).read(); lat.append(time.perf_counter() - t0); time.sleep(0.05)
[t.join() for t in ts]
srv.terminate(); srv.wait()
lat.sort()
print(f"{gpt}: /health over {len(lat)} polls: median {lat[len(lat)//2]*1000:.1f} ms, max {lat[-1]*1000:.1f} ms (body {len(body)/1e6:.1f} MB x 4 clients)")
