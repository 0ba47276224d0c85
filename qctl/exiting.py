"""Ending the qctl process without the interpreter's teardown.

After a command, Python tears down every module and frees every object one by one: about
0.1 s for a Kafka redrive's 350 modules, a cost every command pays after its work is
done. ``end_process`` does what that teardown does that anyone could notice, then ends
the process at once:

* waits for the threads that are not daemons, as Python does before ``atexit``;
* runs the ``atexit`` handlers (logging's flush, multiprocessing's clean-up, and any a
  plugin registered);
* flushes every file object still open, which the teardown would have done by freeing it;
* flushes stdout and stderr.

When a Kafka consumer is still open (a plugin's, say), the normal teardown runs instead:
freeing it leaves its consumer group, which a process that just ends does not, and the
group would wait a session timeout before it rebalances.
"""

from __future__ import annotations

import _io
import atexit
import gc
import os
import sys
import threading


def end_process(code: int) -> None:
    """End the process with ``code``; returns only when the normal exit must run."""
    cimpl = sys.modules.get("confluent_kafka.cimpl")
    consumer = cimpl.Consumer if cimpl is not None else None
    if consumer is not None and any(isinstance(obj, consumer) for obj in gc.get_objects()):
        return
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon and thread.is_alive():
            thread.join()
    atexit._run_exitfuncs()
    try:
        # The C base of every file object: io.IOBase is an ABC, and isinstance against it
        # costs about six times more over the tens of thousands of objects of a run.
        for obj in gc.get_objects():
            if isinstance(obj, _io._IOBase) and not obj.closed and obj.writable():
                obj.flush()
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except Exception:  # a flush that fails is the normal exit's to report
        return
    os._exit(code)
