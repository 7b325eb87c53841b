"""The one constant the original client imports: the terminal SSE event names."""

SSE_TERMINALS = {"finished", "failed", "cancelled"}
