"""Long calls release the GIL and stop on Ctrl-C."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np

import imram


def random_inputs(world, images, captions, seed=0):
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((images, 8, 16)).astype(np.float32)
    texts = world.test_captions()
    return features, [texts[i % len(texts)] for i in range(captions)]


def test_another_thread_runs_while_a_score_is_computed(world):
    model = imram.Model(str(world.model))
    images, captions = 50, 500
    while True:
        features, texts = random_inputs(world, images, captions)
        ticks = []
        stop = threading.Event()

        def count():
            while not stop.is_set():
                ticks.append(time.perf_counter())

        counter = threading.Thread(target=count)
        counter.start()
        time.sleep(0.05)
        started = time.perf_counter()
        model.score(features, texts)
        finished = time.perf_counter()
        stop.set()
        counter.join()
        if finished - started >= 0.4:
            break
        images *= 2
    # With the GIL held by the score, the counter could only run at its edges.
    middle = [t for t in ticks if started + 0.25 * (finished - started) < t < finished - 0.25 * (finished - started)]
    assert len(middle) > 1000, f"{len(middle)} ticks of the other thread in the middle half of a {finished - started:.2f} s score"


CHILD = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    import imram
    model_dir, captions_file = sys.argv[1:3]
    model = imram.Model(model_dir)
    texts = open(captions_file).read().splitlines()
    rng = np.random.default_rng(0)
    def inputs(images, captions):
        return (rng.standard_normal((images, 8, 16)).astype(np.float32),
                [texts[i % len(texts)] for i in range(captions)])
    sample = inputs(100, 2000)
    begin = time.time(); model.score(*sample); rate = 100 * 2000 / (time.time() - begin)
    captions = 20000
    images = max(100, int(rate * 30 / captions))  # about 30 s of work
    work = inputs(images, captions)
    print(json.dumps({"expected_s": images * captions / rate}), flush=True)
    try:
        model.score(*work)
        print(json.dumps({"finished": time.time()}), flush=True)
    except KeyboardInterrupt:
        print(json.dumps({"interrupted": time.time()}), flush=True)
""")


def test_ctrl_c_stops_a_long_score(world, tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = subprocess.Popen([sys.executable, str(script), str(world.model), str(world.data / "test_caps.txt")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    expected = json.loads(child.stdout.readline())["expected_s"]
    time.sleep(1.0)
    sent = time.time()
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    answer = json.loads(out.strip().splitlines()[-1])
    assert "interrupted" in answer, out
    latency = answer["interrupted"] - sent
    print(f"KeyboardInterrupt {latency:.3f} s after SIGINT, in a score of about {expected:.0f} s")
    # Not a timing test: a score that ignored Ctrl-C would run its whole course before raising.
    assert latency < expected / 4


def test_freed_tensor_memory_is_kept_for_the_next_call(world):
    model = imram.Model(str(world.model))
    features, texts = random_inputs(world, 200, 1000)
    first = model.score(features, texts)
    kept = imram.release_memory()
    assert kept >= 1 << 20
    assert imram.release_memory() == 0
    np.testing.assert_array_equal(model.score(features, texts), first)
    unset = subprocess.run(
        [sys.executable, "-c", "import numpy as np, imram, sys; m = imram.Model(sys.argv[1]);"
         " m.score(np.random.rand(200, 8, 16).astype('float32'), ['a red circle'] * 1000);"
         " print(imram.release_memory())", str(world.model)],
        capture_output=True, text=True, env=dict(os.environ, IMRAM_KEEP_FREED_MEMORY="0"), check=True)
    assert unset.stdout.strip() == "0"
