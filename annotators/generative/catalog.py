"""The four generative annotators (style transfer and editing), in the order they are registered."""

from .depth_edit import DepthEditAnnotator
from .fill_edit import FillEditAnnotator
from .instant_style import InstantStyleAnnotator
from .redux_style import ReduxStyleAnnotator

GENERATIVE_ANNOTATORS = (InstantStyleAnnotator, ReduxStyleAnnotator, FillEditAnnotator, DepthEditAnnotator)
