"""Input flow control of a :class:`~coaptcp.channel.Channel`: how much of what the peer
sent is processed per reactor turn, and what stops while the peer reads none of our output.

A peer may pipeline any number of requests in one read (RFC 8323 section 3 leaves the
connection's management to us): at most ``limits.messages_per_read`` messages are
handled per turn, and none while our transport is full; the rest waits, with reading from
the transport off.  A frame that takes longer than ``limits.frame_timeout`` to arrive (a
slowloris), and a peer that reads nothing of our output for ``limits.write_timeout``, are
aborted (RFC 8323 section 5.6).
"""

from __future__ import annotations

from coaptcp.channel.base import ChannelBase
from coaptcp.channel.watchdog import cancel_calls

__all__ = ["InputFlow"]


class InputFlow(ChannelBase):
    """Bytes (RFC 8323 section 3) and WebSocket messages (section 4) in, processed within
    each turn's budget, and held while the peer does not read our output."""

    __slots__ = ()

    def data_received(self, data: bytes) -> None:
        """Feed bytes from a TCP or TLS stream."""
        self._watchdog.last_activity = self._reactor.seconds()
        connection = self.connection
        if self._reading_off:
            # A backlog is waiting (or the peer does not read our answers): keep the
            # bytes for later.  Reading is off, so this is at most what one read of the
            # transport (or of its TLS layer) held when we paused it.
            connection.feed(data)
        else:
            # _process_input, inline (one call less for every read)
            self._dispatch(connection.receive_data(data, self.limits.messages_per_read))
            if self._held_events is not None or connection.input_waiting:
                self._hold_input()
        if self._frame_call is not None or connection.partial_frame:
            self._check_frame_timer()  # else it has nothing to do

    def _process_input(self, data: bytes = b"") -> None:
        """Process what the peer sent, within this reactor turn's budget.

        At most ``limits.messages_per_read`` messages are handled at once, and none once
        our output is blocked (the peer does not read it): the rest waits, with reading
        from the transport off, for a later turn or for the transport to drain.  So one
        read costs bounded time and output, and other connections get their turn.
        """
        connection = self.connection
        self._dispatch(connection.receive_data(data, self.limits.messages_per_read))
        if self._held_events is not None or connection.input_waiting:
            self._hold_input()

    def _hold_input(self) -> None:
        """Stop reading while a backlog waits; go on in a later turn unless blocked."""
        self._stop_reading()
        if self._input_call is None and not self._paused and not self._lost:
            self._input_call = self._reactor.callLater(0, self._continue_input)

    def _continue_input(self) -> None:
        """A later turn: the held events first, then one more budget of the backlog."""
        self._input_call = None
        if self._lost or self._paused:
            return
        held = self._held_events
        if held is not None:
            self._held_events = None
            self._dispatch(held)
        if self._held_events is None and not self._paused:
            if self.connection.websocket:
                self._turn_left = self.limits.messages_per_read
                queue = self._ws_queue
                while queue and self._turn_left > 0 and not self._paused and not self._lost:
                    self._turn_left -= 1
                    self._dispatch(self.connection.receive_ws_message(queue.popleft()))
            else:
                self._dispatch(self.connection.receive_data(b"", self.limits.messages_per_read))
        if self._lost or self._paused:
            return  # blocked again: resume() goes on
        if self.input_backlog:
            self._hold_input()
            return
        self._read_again()
        self._check_frame_timer()
        self._maybe_finish_release()

    def _stop_reading(self) -> None:
        if not self._reading_off:
            self._reading_off = True
            self._set_reading(False)

    def _read_again(self) -> None:
        """Turn reading back on, unless the connection is closing (no more input then)."""
        if self._reading_off and not self._closing and not self._lost:
            self._reading_off = False
            self._set_reading(True)

    @property
    def input_backlog(self) -> bool:
        """Whether input was received that is not processed yet (flow control)."""
        return bool(
            self._held_events is not None or self._ws_queue or self.connection.input_waiting
        )

    def _check_frame_timer(self) -> None:
        frame_timeout = self.limits.frame_timeout
        if frame_timeout is None:
            return
        if self.connection.partial_frame and not self._reading_off:
            if self._frame_call is None and not self._lost and not self._closing:
                self._frame_call = self._reactor.callLater(frame_timeout, self._frame_timed_out)
        elif self._frame_call is not None:
            if self._frame_call.active():
                self._frame_call.cancel()
            self._frame_call = None

    def _frame_timed_out(self) -> None:
        self._frame_call = None
        if self._reading_off:
            return  # our backlog, not the peer's slowness; checked again once it clears
        if self.connection.partial_frame and not self._lost:
            self._dispatch(
                self.connection.abort_for_violation(
                    f"a frame took longer than {self.limits.frame_timeout:g} s to arrive",
                    "frame_timeout",
                )
            )

    def new_read(self) -> None:
        """A new read of the transport starts: WebSocket messages get a fresh budget."""
        self._turn_left = self.limits.messages_per_read

    def ws_message_received(self, data: bytes) -> None:
        """Feed one binary WebSocket message."""
        self._watchdog.last_activity = self._reactor.seconds()
        if self._reading_off or self._turn_left <= 0 or self._paused:
            self._ws_queue.append(data)
            self._hold_input()
            return
        self._turn_left -= 1
        self._dispatch(self.connection.receive_ws_message(data))

    # -- output flow control: the transport's buffer is full ------------------------------

    def pause(self) -> None:
        """The transport's buffer is full (the peer reads slowly, or not at all).

        Requests already read wait unprocessed, reading stops, notifications are held,
        and the write timeout starts: a peer that reads nothing for
        ``limits.write_timeout`` seconds is aborted.
        """
        if self._paused:
            return
        self._paused = True
        self._stop_reading()
        timeout = self.limits.write_timeout
        if timeout is not None and self._write_call is None and not self._lost:
            self._write_call = self._reactor.callLater(timeout, self._write_timed_out)

    def resume(self) -> None:
        """The transport drained: go on with the input and send the latest state of
        every stale observation."""
        self._paused = False
        cancel_calls(self._write_call)
        self._write_call = None
        if self.input_backlog:
            self._hold_input()  # processed in the next turn, then reading goes on
        else:
            self._read_again()
        for observation in list(self._observations.values()):
            if observation.stale:
                self.notify(observation)

    def _write_timed_out(self) -> None:
        self._write_call = None
        if self._lost or not self._paused:
            return
        timeout = self.limits.write_timeout
        self.log.info(
            "Aborting {peer}: it read nothing of our output for {timeout:g} s",
            peer=self.peer,
            timeout=timeout,
        )
        self.abort(f"you read nothing of our output for {timeout:g} s", "write_timeout")
