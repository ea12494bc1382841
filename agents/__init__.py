"""Programs that run on the gateway host or beside it while nobody runs `pulumi up`: the spend watcher
(``spend``), the wake hook's ``Waker`` (``wake``), and the helpers that start and stop them as processes
on this machine (``process``). They use the vendor clients in ``providers`` and the pure layer ``core``;
they are not Pulumi providers. ``library`` names the project files an agent needs on a host."""
