"""Where state lives: every Redis key (``keys``), the Lua scripts and their one typed wrapper each
(``scripts``, ``lua/``), a service queue's settings and status (``state``), finding Redis (``connection``)
and riding out the times it is away (``outage``)."""
