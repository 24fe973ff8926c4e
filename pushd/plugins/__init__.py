"""
pushd's plugin package, searched by ``twisted.plugin.getPlugins``.

Twisted's plugin loader cannot read a PEP 420 namespace package (it needs the
package's ``__file__``), so this package has an ``__init__.py``, exactly like
``twisted/plugins`` in Twisted itself, and extends its ``__path__`` with every
``pushd/plugins`` directory on ``sys.path`` that has none.  A third party
adds a plugin by shipping ``pushd/plugins/<its name>.py`` and no
``__init__.py`` (Twisted's "Alternate Plugin Packages").
"""

from typing import List

from twisted.plugin import pluginPackagePaths

__path__.extend(pluginPackagePaths(__name__))
__all__: List[str] = []
