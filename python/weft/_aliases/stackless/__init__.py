"""`import stackless` answered by weft (see weft/alias.py): the very module
weft.stackless, so that its module properties (`stackless.current`, ...)
work as in Stackless."""
import sys

import weft.stackless as _stackless

sys.modules[__name__] = _stackless
