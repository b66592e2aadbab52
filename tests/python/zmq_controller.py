"""A minimal experimance-style controller in Python (pyzmq).

Binds PUSH for work and PULL for results on free loopback ports, prints the
two endpoints, waits for a line on stdin (the worker is up), sends one
RenderRequest and one AudioRenderRequest, and prints each result as a JSON
line. Used by tests/zmq.rs to show interop with the Python ecosystem.
"""
import json
import sys

import zmq

ctx = zmq.Context()
push = ctx.socket(zmq.PUSH)
pull = ctx.socket(zmq.PULL)
push.setsockopt(zmq.LINGER, 0)
pull.setsockopt(zmq.LINGER, 0)
push.setsockopt(zmq.SNDTIMEO, 10000)
pull.setsockopt(zmq.RCVTIMEO, 20000)
push.bind("tcp://127.0.0.1:*")
pull.bind("tcp://127.0.0.1:*")
print(push.getsockopt(zmq.LAST_ENDPOINT).decode(), pull.getsockopt(zmq.LAST_ENDPOINT).decode(), flush=True)
sys.stdin.readline()
push.send_string(json.dumps({
    "type": "RenderRequest", "request_id": "py-1", "generator": None, "prompt": "a windmill on a hill",
    "negative_prompt": None, "width": 512, "height": 384, "style": None, "seed": 7,
    "reference_image": None, "depth_map": None, "clear_queue": False, "era": "pre_industrial", "biome": "plains",
}))
push.send_string(json.dumps({
    "type": "AudioRenderRequest", "request_id": "py-2_audio", "generator": None, "prompt": "calm embers at rest",
    "duration_s": 30, "style": None, "seed": None, "metadata": None, "clear_queue": False,
}))
for _ in range(2):
    print(json.dumps(json.loads(pull.recv_string())), flush=True)
