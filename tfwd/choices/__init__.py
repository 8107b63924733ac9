"""The package's vocabulary: every choice's values and every shared default, spelled once.

One small module per concept: a ``tfwd.choices._choice.Choice`` class whose UPPER_CASE
attributes are the concept's values as plain strings (``Optimizer.KFAC_G`` is ``"kfac_g"``, the
string flags, saved configs and run keys hold), its ``values()`` tuple that flags and checks
list, and the concept's defaults, each with its reason:

===============================  ================================================================
module                           concept
===============================  ================================================================
``optimizers``                   ``Optimizer`` (sgd, adam, kfac_g, kfac_f), ``is_kfac``,
                                 ``kfac_curvature`` (kfac_g → gauss_newton, kfac_f → fisher)
``curvature``                    ``Curvature``: what the Kronecker factors estimate
``kfac``                         K-FAC's inverse methods, low-rank modes, weight sharing and
                                 scale-shift blocks, and its defaults (damping, periods, …)
``damping``                      adaptive damping: defaults and the range checks
``noise``                        ``NoiseKind`` of paper 002's curvature noise, and its defaults
``quadratic``                    ``QuadraticNoise``: the convex quadratic study's noise matrices
``decay``                        ``DecayType``, ``DecayGroup`` and the decay defaults
``schedules``                    ``LearningRateScaling`` with the batch size
``scales``                       ``ScaleName`` of the experiment entries
``data``                         ``Dataset``, ``Split``
``runtime``                      ``Strategy``, ``Loop``, ``DtypePolicy``
``models``                       ``Architecture`` of the model zoo, its top layer, batch norm
``diagnostics``                  ``Diagnostic`` names
``layers``                       ``LayerGroup``: weight layers a diagnostic selects
``regimes``                      ``RegimeName``: paper 002's training regimes
===============================  ================================================================

Plain Python, below every other layer: importing it never imports TensorFlow, so launchers
check their flags first (a test runs the import in a fresh interpreter).
"""
