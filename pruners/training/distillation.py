"""Knowledge distillation from a trained teacher while a student trains (and prunes): the loss terms and the
`Distiller` that a `GatedModel`'s train step calls.

The student's loss becomes `(1 - alpha) * task + alpha * KD + hidden_weight * hidden`:
- KD, for classification, `T**2 * KL(softmax(teacher / T) || softmax(student / T))` averaged over the batch
  (Hinton et al. 2015; the `T**2` keeps its gradients' scale as `T` changes); for regression, the mean squared
  difference of the two scores;
- hidden, the mean squared difference between each student block's output and its teacher block's (student
  block `i` of `S` reads teacher block `ceil((i + 1) * T / S) - 1`), over the tokens the attention mask keeps, after a
  learned linear map when the widths differ (TinyBERT's `W_h`).
The teacher runs in inference mode on each batch; nothing of it is kept between batches and its weights never
change.
"""

import keras
from keras import ops

from gated.encoder import block_states_model
from pruners.training.state import assign_variables_state, variables_state


def kd_loss(student_logits, teacher_logits, temperature, regression=False):
    """The KD term on one batch's logits `(B, C)` (scores `(B, 1)` for regression)."""
    if regression:
        return ops.mean(ops.square(student_logits - teacher_logits))
    teacher = ops.softmax(teacher_logits / temperature, axis=-1)
    student_log = ops.log_softmax(student_logits / temperature, axis=-1)
    teacher_log = ops.log_softmax(teacher_logits / temperature, axis=-1)
    return temperature ** 2 * ops.mean(ops.sum(teacher * (teacher_log - student_log), axis=-1))


def hidden_loss(student_states, teacher_states, attention_mask, maps=None):
    """Mean over the layer pairs of the squared difference per kept token and unit, the student's states first
    mapped by `maps[i]` (`(D_student, D_teacher)`; None: same widths)."""
    keep = ops.cast(attention_mask, "float32")[:, :, None]  # (B, T, 1)
    terms = []
    for index, (student, teacher) in enumerate(zip(student_states, teacher_states, strict=True)):
        if maps is not None:
            student = ops.matmul(student, maps[index])  # (B, T, D_teacher)
        squared = ops.square(student - ops.stop_gradient(teacher)) * keep
        terms.append(ops.sum(squared) / (ops.sum(keep) * ops.cast(ops.shape(teacher)[-1], "float32")))
    return ops.mean(ops.stack(terms))


def teacher_layers(student_layers, teacher_layers_count):
    """The teacher block each student block `i` of `S` learns from: `ceil((i + 1) * T / S) - 1` of `T` (evenly
    spread, last to last; a deeper student shares teacher blocks)."""
    return [-(-(index + 1) * teacher_layers_count // student_layers) - 1 for index in range(student_layers)]


class Distiller:
    """Adds distillation from `teacher` to a `GatedModel`'s train step (`attach`).

    The latest terms and their sums since `reset_totals` live in variables the train step updates, so a callback
    can log them. Learned maps (hidden distillation between different widths) have their own Adam optimizer.

    Args:
        teacher: a trained model with the student's inputs and label count (its weights are never changed).
        temperature: KD softmax temperature (> 0).
        alpha: weight of the KD term; the task loss gets `1 - alpha`.
        hidden_weight: weight of the hidden-state term (0: logits only).
        regression: the task is a regression (KD is then the scores' squared difference).
        maps_lr: learning rate of the learned maps.
    """

    term_names = ("distill_loss", "hidden_loss")

    def __init__(self, teacher, temperature=2.0, alpha=0.5, hidden_weight=0.0, regression=False, maps_lr=1e-3):
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got temperature={temperature}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got alpha={alpha}")
        if hidden_weight < 0:
            raise ValueError(f"hidden_weight must be >= 0, got hidden_weight={hidden_weight}")
        self.teacher = teacher
        self.teacher.trainable = False
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.hidden_weight = float(hidden_weight)
        self.regression = regression
        self.maps_lr = maps_lr
        self.model = None
        self.maps = None
        self.optimizer = None
        self.totals = {name: keras.Variable(0.0, trainable=False, name=f"{name}_total") for name in self.term_names}
        self.count = keras.Variable(0.0, trainable=False, name="distill_batches")

    @property
    def uses_hidden(self):
        return self.hidden_weight > 0

    def attach(self, model):
        """Register with `model` (a `GatedModel`); check that the teacher fits it and build the hidden-state views
        and maps when hidden distillation is on."""
        if not hasattr(model, "set_distiller"):
            raise TypeError(f"distillation needs a GatedModel (build_gated_encoder), got {type(model).__name__}")
        student_labels, teacher_labels = model.output.shape[-1], self.teacher.output.shape[-1]
        if student_labels != teacher_labels:
            raise ValueError(f"the teacher gives {teacher_labels} outputs, the student {student_labels}: the teacher "
                             "must be fine-tuned for the student's task")
        if self.model is None and self.uses_hidden:
            self._student_view = block_states_model(model)
            self._teacher_view = block_states_model(self.teacher)
            student_widths = [output.shape[-1] for output in self._student_view.outputs[:-1]]
            teacher_widths = [output.shape[-1] for output in self._teacher_view.outputs[:-1]]
            self.pairs = teacher_layers(len(student_widths), len(teacher_widths))
            if student_widths[0] != teacher_widths[0]:
                init = keras.initializers.GlorotUniform(seed=0)
                self.maps = [keras.Variable(init((student_widths[0], teacher_widths[0])), name=f"hidden_map_{index}")
                             for index in range(len(student_widths))]
                self.optimizer = keras.optimizers.Adam(self.maps_lr, name="hidden_maps_adam")
                self.optimizer.build(self.maps)
        self.model = model
        model.set_distiller(self)

    def detach(self):
        if self.model is not None:
            self.model.set_distiller(None)
            self.model = None

    def student_outputs(self, x, training=True):
        """`(logits, hidden states or None)` of the attached student on `x`."""
        if not self.uses_hidden:
            return self.model(x, training=training), None
        outputs = self._student_view(x, training=training)
        return outputs[-1], outputs[:-1]

    def loss(self, x, task_loss, logits, student_states=None):
        """`(total loss, {term: value})` for one batch."""
        if self.uses_hidden:
            teacher_outputs = self._teacher_view(x, training=False)
            teacher_logits, teacher_states = teacher_outputs[-1], [teacher_outputs[i] for i in self.pairs]
            hidden = hidden_loss(student_states, teacher_states, x["attention_mask"], self.maps)
        else:
            teacher_logits, hidden = self.teacher(x, training=False), ops.zeros(())
        distill = kd_loss(logits, ops.stop_gradient(teacher_logits), self.temperature, self.regression)
        total = (1.0 - self.alpha) * task_loss + self.alpha * distill + self.hidden_weight * hidden
        return total, {"distill_loss": distill, "hidden_loss": hidden}

    @property
    def trainable_variables(self):
        return list(self.maps or [])

    def apply_gradients(self, gradients):
        if self.maps:
            self.optimizer.apply_gradients(zip(gradients, self.maps, strict=True))

    def record(self, terms):
        for name in self.term_names:
            self.totals[name].assign_add(ops.cast(terms[name], "float32"))
        self.count.assign_add(1.0)

    def means(self):
        """`{term: mean since reset_totals}` (NaN before any batch)."""
        count = float(self.count.numpy())
        return {name: float(total.numpy()) / count if count else float("nan") for name, total in self.totals.items()}

    def reset_totals(self):
        for total in self.totals.values():
            total.assign(0.0)
        self.count.assign(0.0)

    def resume_state(self):
        """`(arrays, values)`: the learned maps and their optimizer, for a resumed run."""
        return variables_state(self._state_variables()), {}

    def restore_state(self, arrays, values):
        assign_variables_state(self._state_variables(), arrays)

    def _state_variables(self):
        return {"maps": self.maps, "optimizer": self.optimizer.variables} if self.maps else {}

    def get_config(self):
        return {"temperature": self.temperature, "alpha": self.alpha, "hidden_weight": self.hidden_weight,
                "regression": self.regression}
