"""LangChain integration: compiled graphs as LangChain runnables, LangChain callbacks
reaching every agent, and chat model chunks streamed out of agents.

``counterpoint.Graph.compile()`` returns a :class:`RunnableGraph` whenever langchain-core
is installed (``pip install "counterpoint[langchain]"``); nothing here is imported
otherwise.
"""

from ._callbacks import CallbackObserver, MessagesHandler
from ._runnable import RunnableGraph

__all__ = ["CallbackObserver", "MessagesHandler", "RunnableGraph"]
