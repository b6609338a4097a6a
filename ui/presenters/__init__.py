"""Presenters: flow states and reports -> view models. Qt-free."""
