"""The publisher's configuration: the ``[event-publisher:NAME]`` INI section
parsed (:mod:`.parse`) into one frozen object per group of keys
(:mod:`.sections`), with the checks on secret files (:mod:`.secrets`).
Every stage takes its own object from here.
"""
