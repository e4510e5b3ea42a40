"""Stopping on request without losing work: on SIGTERM (a preempted cloud machine or TPU VM,
about 30 s of notice) or SIGINT (Ctrl-C), training finishes its current step, writes a
checkpoint and stops; rerunning the same command resumes exactly there. Under several
workers they agree each step, so all stop after the same one."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

import keras
import tensorflow as tf

from contrastive_tf import distribute

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopOnSignal(keras.callbacks.Callback):
    """Ends `fit` after the step during which SIGTERM or SIGINT arrived (`signal_name`
    says which). A second SIGINT interrupts at once, as Ctrl-C usually does."""

    def __init__(self):
        super().__init__()
        self.signal_name: str | None = None
        self._seen = False
        self._agree = None

    def _on_signal(self, number, frame) -> None:
        if self._seen and number == signal.SIGINT:
            raise KeyboardInterrupt
        self._seen = True
        self.signal_name = self.signal_name or signal.Signals(number).name

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopOnSignal]:
        """The handlers in place for the duration (only the main thread can have them)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {number: signal.signal(number, self._on_signal) for number in SIGNALS}
        try:
            yield self
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def on_train_begin(self, logs=None):
        strategy = self.model.distribute_strategy
        self._agree = None
        if distribute.is_multi_worker(strategy):
            # A signal may reach one worker only; all must stop after the same step. One
            # traced all-gather of a flag, called after every step.
            @tf.function
            def agree(flag: tf.Tensor) -> tf.Tensor:
                return tf.reduce_max(distribute.gather_from_workers(strategy, flag))

            self._agree = agree

    def on_train_batch_end(self, batch, logs=None):
        stop = self._seen
        if self._agree is not None:
            stop = bool(self._agree(tf.constant(int(stop))).numpy() > 0)
            self.signal_name = self.signal_name or ("a signal to another worker" if stop else None)
        if stop:
            self.model.stop_training = True
