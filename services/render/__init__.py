"""render: merges accepted messages with their templates (``render.<lane>`` → ``policy.<lane>``)."""
