#!@PYTHON@ -s
"""@COMMAND@, as the autopyfactory RPM installs it.

Its libraries are bundled in share/autopyfactory/bundled and come first on the
path, so the versions the factory was tested with win over any the OS has; the
HTCondor bindings the EL9 RPM bundles (in lib64) come after the package itself.
Paths are taken from this file's place, so an unpacked payload runs as well.
"""
import os
import sys

prefix = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
sys.path[:0] = [os.path.join(prefix, "share/autopyfactory/bundled"), os.path.join(prefix, "@SITELIB@"),
                os.path.join(prefix, "@CONDORDIR@")]

from @MODULE@ import main  # noqa: E402

sys.exit(main())
