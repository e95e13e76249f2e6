"""The ``gossipreg`` command (needs the ``cli`` extra: ``pip install 'gossipreg[cli]'``).

The core library never imports this package.
"""
