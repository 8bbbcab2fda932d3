"""`GatedModel`: a functional Keras model whose train step shows its gradients to hooks."""

import keras
import tensorflow as tf

# Hooks that must not run yet fail a `tf.debugging.Assert` whose message starts with this;
# `GatedModel.fit` turns that graph error into a plain `RuntimeError` carrying the message.
HOOK_NOT_READY = "train step hook not ready: "


def _scaled(gradient, factor):
    """`gradient * factor`, an IndexedSlices kept as one."""
    if isinstance(gradient, tf.IndexedSlices):
        return tf.IndexedSlices(gradient.values * factor, gradient.indices, gradient.dense_shape)
    return gradient * factor


@keras.saving.register_keras_serializable(package="gated_bert")
class GatedModel(keras.Model):
    """A Keras model whose training step calls registered hooks with each batch and its gradients.

    Pruners that learn from training (movement scores, SPT probes) register a
    hook instead of running a second backward pass. A hook is called inside
    the compiled train step as `hook(inputs, labels, variables, gradients)`,
    after the gradients are computed and before the optimizer applies them;
    it may only run TensorFlow ops (assign to its own variables). A hook that
    must not run yet asserts with a message starting `HOOK_NOT_READY`, and
    `fit` raises that message as a `RuntimeError`. Hooks are not saved with
    the model.

    A mask learner (`pruners.GumbelMaskLearner`) registered with
    `set_mask_learner` changes three things in the train step: its
    `penalty()` is added to the task loss (the `loss` metric stays the task
    loss), it chooses the variables to differentiate, and it applies the
    gradients (the mask logits have their own optimizer). A learner with
    `watched()` (`pruners.SoftMovementLearner`) names mask variables that the
    tape differentiates although they are not trainable: their gradients are
    its scores' straight-through gradients.

    A distiller (`pruners.Distiller`) registered with `set_distiller` gives
    the forward pass (with hidden states when it distils them) and turns the
    task loss into the distillation loss; the `loss` metric stays the task
    loss, and the distiller's own variables (learned maps) get their gradients.
    `objective(x, y)` gives that loss (task, or distillation) in inference
    mode: what SPT's probes measure.

    Built like any functional model: `GatedModel(inputs, outputs, name=...)`.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._train_step_hooks = ()
        self._mask_learner = None
        self._distiller = None

    def add_train_step_hook(self, hook):
        """Register `hook`; the train step is retraced so that it calls it."""
        if hook not in self._train_step_hooks:
            self._train_step_hooks = (*self._train_step_hooks, hook)
            self.train_function = None

    def remove_train_step_hook(self, hook):
        """Unregister `hook` (a no-op when it is not registered)."""
        if hook in self._train_step_hooks:
            self._train_step_hooks = tuple(h for h in self._train_step_hooks if h != hook)
            self.train_function = None

    def set_mask_learner(self, learner):
        """Register `learner` (None removes it); the train step is retraced when that changes anything.

        The model's optimizer is built here over every trainable variable, as `load_model` rebuilds it: a learner
        applies only some of their gradients through it, and its state must still load back from a checkpoint.
        """
        optimizer = getattr(self, "optimizer", None)
        if learner is not None and optimizer is not None and not optimizer.built:
            optimizer.build(self.trainable_variables)
        if learner is not self._mask_learner:
            self._mask_learner = learner
            self.train_function = None

    def set_distiller(self, distiller):
        """Register `distiller` (None removes it); the train step is retraced when that changes anything."""
        if distiller is not self._distiller:
            self._distiller = distiller
            self.train_function = None

    def fit(self, *args, **kwargs):
        # Without a distribution strategy Keras builds the optimizer inside the first trace of the train step, and
        # variables created there make tf.function trace the whole step a second time. Built here, as Keras builds
        # it under a strategy (over the variables that step hands it), the step is traced once.
        optimizer = getattr(self, "optimizer", None)
        if optimizer is not None and not optimizer.built and self.built:
            with self.distribute_strategy.scope():
                optimizer.build(self.trainable_variables)
        try:
            return super().fit(*args, **kwargs)
        except tf.errors.InvalidArgumentError as error:
            start = error.message.find(HOOK_NOT_READY)
            if start < 0:
                raise
            end = error.message.find("]", start)
            raise RuntimeError(error.message[start + len(HOOK_NOT_READY):end]) from None

    def _whole_batch_gradients(self, gradients, count, replicas):
        """Under a mirrored strategy: `(the whole batch's gradients, what to hand the optimizers)`, the same on every
        replica. Keras clips each replica's share before summing the shares, which is not what one device does; so
        the sum is taken here (what the pruning hooks see), clipped at the optimizer's global norm as one device
        clips it, and handed on divided by the replica count (the optimizers sum it back)."""
        context = tf.distribute.get_replica_context()
        present = [index for index, gradient in enumerate(gradients) if gradient is not None]
        # Embedding rows come as IndexedSlices, and stay so: densified, each step would all-reduce whole tables.
        summed = context.all_reduce(tf.distribute.ReduceOp.SUM, [gradients[index] for index in present])
        whole = list(gradients)
        for index, gradient in zip(present, summed, strict=True):
            whole[index] = gradient
        model, own = whole[:count], whole[count:]
        if self.optimizer.global_clipnorm:
            model, _ = tf.clip_by_global_norm(model, self.optimizer.global_clipnorm)
        applied = [None if gradient is None else _scaled(gradient, 1 / replicas) for gradient in [*model, *own]]
        return whole, applied

    def objective(self, x, y, sample_weight=None):
        """The loss the train step minimises on a batch, in inference mode: the task loss, turned into the
        distillation loss when a distiller is registered (a mask learner's penalty is not part of it).
        Criteria that measure how much removing a unit costs (SPT's probes) measure this."""
        return self._objective_terms(x, y, sample_weight, False)[2]

    def _objective_terms(self, x, y, sample_weight, training, scale=1):
        """`(y_pred, task loss, objective, distillation terms or None)` on a batch; the losses times `scale`."""
        distiller = self._distiller
        if distiller is None:
            y_pred, states = self(x, training=training), None
        else:
            y_pred, states = distiller.student_outputs(x, training=training)
        loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training) * scale
        if distiller is None:
            return y_pred, loss, loss, None
        total, terms = distiller.loss(x, loss, y_pred, states)
        return y_pred, loss, total, terms

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        learner, distiller = self._mask_learner, self._distiller
        with tf.GradientTape() as tape:
            for variable in getattr(learner, "watched", list)():  # masks that learn although not trainable
                tape.watch(variable.value)
            # Under a mirrored strategy Keras divides the loss by the replica count (the replicas' gradients are
            # summed): undone here, and done once to the whole objective below.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            y_pred, loss, total, distill_terms = self._objective_terms(x, y, sample_weight, True, replicas)
            if learner is not None:
                penalty, terms = learner.penalty()
                total = total + penalty
            scaled_loss = self.optimizer.scale_loss(total / replicas)
        variables = self.trainable_variables if learner is None else learner.trainable_variables(self)
        own = [] if distiller is None else distiller.trainable_variables
        gradients = tape.gradient(scaled_loss, [*variables, *own])
        applied = gradients
        if replicas > 1:
            gradients, applied = self._whole_batch_gradients(gradients, len(variables), replicas)
        if own:
            distiller.apply_gradients(applied[len(variables):])
        gradients, applied = gradients[:len(variables)], applied[:len(variables)]
        if distiller is not None:
            distiller.record(distill_terms)
        for hook in self._train_step_hooks:
            hook(x, y, variables, gradients)
        if learner is None:
            self.optimizer.apply_gradients(zip(applied, variables, strict=True))
        else:
            learner.record(loss, terms)
            learner.apply_gradients(self.optimizer, variables, applied)
        batch_size = tf.shape(next(iter(tf.nest.flatten(x))))[0]
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss, sample_weight=batch_size)
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
