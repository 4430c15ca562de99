# parts register themselves in vlp.registry.MODELS on import
from . import clip  # noqa: F401
from . import albef  # noqa: F401
from . import blip  # noqa: F401
from . import blip_caption  # noqa: F401
from . import blip_vqa  # noqa: F401
from . import coca  # noqa: F401
from . import blip2  # noqa: F401
from . import blip2_lm  # noqa: F401
from . import vlmo  # noqa: F401
from . import vilt  # noqa: F401
from . import beit3  # noqa: F401
from . import downstream  # noqa: F401
from . import beit3_retrieval  # noqa: F401
