"""Counting: the dispatch-level engine, MAC rules per ATen op, meta shape shortcuts, the
storage tracker, input shapes. Imports only torch, fvcore and archcost.{errors,conditions,zoo}."""
